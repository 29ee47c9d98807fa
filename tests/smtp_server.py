#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) for the email alert tests.

`python3 -m aiosmtpd -n -l 127.0.0.1:2525` speaks plain SMTP only; this
adds what a production relay asks for: STARTTLS (required) or implicit TLS,
and AUTH with one user. Every message is written to OUT/N.eml, with the
envelope, whether the session was encrypted and who logged in as headers
of our own (X-Test-*), so the test reads what arrived exactly.

usage: smtp_server.py --port P --out DIR [--mode plain|starttls|tls]
                      [--cert PEM --key PEM] [--user U --password P]
"""
import argparse
import os
import ssl
import sys
import time
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    def __init__(self, out):
        self.out = out
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        # Asked of the connection itself: aiosmtpd's session.ssl only
        # knows of STARTTLS.
        tls = server.transport.get_extra_info("ssl_object") is not None
        head = (
            f"X-Test-Mail-From: {envelope.mail_from}\r\n"
            f"X-Test-Rcpt-To: {','.join(envelope.rcpt_tos)}\r\n"
            f"X-Test-TLS: {'yes' if tls else 'no'}\r\n"
            f"X-Test-Auth: {session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else '-'}\r\n"
        ).encode()
        tmp = os.path.join(self.out, f".{self.n}.tmp")
        with open(tmp, "wb") as f:
            f.write(head + envelope.original_content)
        os.rename(tmp, os.path.join(self.out, f"{self.n}.eml"))
        return "250 OK"


def main():
    # Known and meant: AUTH without aiosmtpd's own TLS under implicit TLS,
    # and its deprecation notice for login_data.
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", default="plain", choices=["plain", "starttls", "tls"])
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--user")
    ap.add_argument("--password")
    a = ap.parse_args()

    def authenticator(server, session, envelope, mechanism, data):
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == a.user
            and data.password.decode() == a.password
        )
        # handled=False: aiosmtpd answers (235, or 535 on a bad login).
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    smtp_kwargs = {}
    ctx = None
    if a.mode != "plain":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
    if a.mode == "starttls":
        smtp_kwargs.update(tls_context=ctx, require_starttls=True)
    if a.user:
        smtp_kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            # aiosmtpd only knows of TLS it started itself (STARTTLS); under
            # implicit TLS the whole session is encrypted anyway.
            auth_require_tls=a.mode == "starttls",
        )
    kwargs = dict(hostname="127.0.0.1", port=a.port, server_kwargs=smtp_kwargs)
    if a.mode == "tls":
        kwargs["ssl_context"] = ctx
    ctl = Controller(Recorder(a.out), **kwargs)
    ctl.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        ctl.stop()


if __name__ == "__main__":
    sys.exit(main())
