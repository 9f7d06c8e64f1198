"""Process-wide set-up for the unit tests (tests/e2e has its own conftest).

The unit tests never run a reactor, so nothing registers the test's thread as
the reactor thread the way ``reactor.run()`` does in the daemon.  docsyncd asks
``threadable.isInIOThread()`` to decide whether work must be handed over with
``callFromThread``; register pytest's main thread here so that code called from
a test behaves as code called on the reactor thread.
"""

import txaio
from twisted.python import threadable

txaio.use_twisted()
threadable.registerAsIOThread()
