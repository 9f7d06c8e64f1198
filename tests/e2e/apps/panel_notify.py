"""Panel notifications (tests/e2e/test_panel.py): a button whose click shows a toast."""

import panel as pn

pn.extension(notifications=True)

notify = pn.widgets.Button(name="Notify")
notify.on_click(lambda event: pn.state.notifications.success("Saved!", duration=0))
pn.Column("# Notifications", notify).servable()
