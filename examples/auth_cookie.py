"""A login for any app: docsyncd's --auth-module in its simplest form.

Bokeh's auth hooks, with the login and logout pages as twisted.web resources.
The user's name travels in a cookie signed with --cookie-secret. The password
check is a placeholder: replace it before real use. Run it with::

    DOCSYNC_COOKIE_SECRET=$(docsync secret) twistd -n docsync --app examples/press_me.py \
        --auth-module examples/auth_cookie.py

then open http://localhost:5006/press_me: it sends you to /login first
(any name, password "sesame").
"""

from html import escape

from twisted.web.resource import Resource

login_url = "/login"
logout_url = "/logout"


def get_user(request):
    user = request.get_secure_cookie("user")
    return user.decode() if user else None


class LoginHandler(Resource):
    isLeaf = True

    def render_GET(self, request):
        next_url = escape(request.args.get(b"next", [b"/"])[0].decode())
        return (f'<!DOCTYPE html><html><body><form method="post" action="login">'
                f'<label>User <input name="username"></label>'
                f'<label>Password <input name="password" type="password"></label>'
                f'<input type="hidden" name="next" value="{next_url}">'
                f'<button type="submit">Log in</button></form></body></html>').encode()

    def render_POST(self, request):
        if request.args.get(b"password", [b""])[0] != b"sesame":
            request.setResponseCode(403)
            return b"wrong password"
        request.set_secure_cookie("user", request.args[b"username"][0].decode())
        request.redirect(request.args.get(b"next", [b"/"])[0])
        return b""


class LogoutHandler(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.clear_cookie("user")
        request.redirect(b"login")
        return b""
