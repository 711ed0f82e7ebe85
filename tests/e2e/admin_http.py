"""A person's admin session over HTTP: log in with the CSRF dance, then read pages."""

import http.cookiejar
import re
import urllib.parse
import urllib.request


class AdminSession:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> str:
        with self.opener.open(self.base_url + path, timeout=10) as response:
            return response.read().decode()

    def login(self, username: str, password: str) -> None:
        form = self.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode({
            "csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/admin/",
        }).encode()
        request = urllib.request.Request(
            self.base_url + "/admin/login/", data=data, headers={"Referer": self.base_url + "/admin/login/"}
        )
        with self.opener.open(request, timeout=10) as response:
            page = response.read().decode()
        if "Log out" not in page:
            raise AssertionError(f"login as {username!r} failed")
