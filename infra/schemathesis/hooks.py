"""Schemathesis hooks for the local stack (loaded with SCHEMATHESIS_HOOKS=hooks).

`cargo lambda watch` turns each request into a JSON event, so it answers its own 500, before
any function runs, to a body that is not UTF-8 or a header value that is not ASCII text.
API Gateway does not (it passes such a body on base64-encoded, and such a header to the
function, which refuses it with a 400). Only those requests are left out here; every other
malformed request is sent and must get a 4xx from the functions.
"""

import schemathesis


def _carried_by_the_emulator(headers, body):
    if not all(str(value).isascii() for value in (headers or {}).values()):
        return False
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


@schemathesis.hook
def filter_case(ctx, case):
    return _carried_by_the_emulator(case.headers, case.body)
