"""A real SMTP server for the account tests (aiosmtpd), on 127.0.0.1 and a free port.

Prints the port on its first line, then writes each message it accepts to DIR as
<n>.json: {"to": [...], "from": ..., "subject": ..., "body": <decoded text>}, written
under a temporary name and renamed, so a reader never sees half a file. Recipients whose
address starts with "reject" are refused with a permanent 550. With --user and
--password, the client must log in (AUTH PLAIN or LOGIN) before sending; --port
picks the port instead.
"""

import argparse
import asyncio
import email
import email.policy
import itertools
import json
import os

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.numbers = itertools.count()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        record = {
            "to": envelope.rcpt_tos,
            "from": str(message["From"]),
            "subject": str(message["Subject"]),
            "content_type": message.get_content_type(),
            "body": message.get_content(),
        }
        n = next(self.numbers)
        tmp = os.path.join(self.directory, f".{n}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.directory, f"{n:06}.json"))
        return "250 Message accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        # handled=False: aiosmtpd then answers 535 itself (the default sends nothing).
        return AuthResult(success=ok, handled=False)

    def factory():
        if args.user:
            return SMTP(
                sink,
                authenticator=authenticator,
                auth_required=True,
                auth_require_tls=False,
            )
        return SMTP(sink)

    sink = Sink(args.directory)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", args.port))
    print(server.sockets[0].getsockname()[1], flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
