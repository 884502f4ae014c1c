"""Uploads the review console to a deployed stack: `infra/dev deploy-console --stack NAME ...`.

Reads the stack's outputs (ConsoleBucketName, ConsoleDistributionId, ApiUrl, JwtIssuer), writes
`config.json` (src/config.ts) beside the built files, uploads the hashed assets first (cached for
a year) and then index.html and config.json (no-cache, so a deploy shows at once), and asks
CloudFront to drop its copies of those two. Old assets stay (a page loaded before the deploy can
still fetch them); the bucket's versioning lets a bad deploy be rolled back.

Every failure is one line on stderr and exit status 1.
"""

import argparse
import json
import mimetypes
import sys
import time
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

IMMUTABLE = "public, max-age=31536000, immutable"
FRESH = "no-cache"
# Written last and served fresh: everything else is content-hashed.
ENTRY_POINTS = ("index.html", "config.json")


def fail(message: str) -> None:
    print(f"deploy-console: {message}", file=sys.stderr)
    sys.exit(1)


def stack_outputs(cloudformation, stack: str) -> dict:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as e:
        fail(f"stack {stack}: {e.response['Error']['Message']}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [
        k
        for k in ("ConsoleBucketName", "ConsoleDistributionId", "ApiUrl", "JwtIssuer")
        if k not in outputs
    ]
    if missing:
        fail(f"stack {stack} has no output {', '.join(missing)} (deploy template.yaml first)")
    return outputs


def console_config(outputs: dict, client_id: str | None, scope: str, params: dict) -> dict:
    """The document src/config.ts reads; without a client id, sign-in is by pasted token."""
    oidc = None
    if client_id:
        oidc = {
            "authority": outputs["JwtIssuer"],
            "client_id": client_id,
            "scope": scope,
            "extra_query_params": params,
        }
    return {"api_base": outputs["ApiUrl"].rstrip("/"), "oidc": oidc}


def content_type(path: Path) -> str:
    kind, _ = mimetypes.guess_type(path.name)
    if path.suffix == ".js":
        return "text/javascript"
    return kind or "application/octet-stream"


def main() -> None:
    parser = argparse.ArgumentParser(prog="infra/dev deploy-console", description=__doc__)
    parser.add_argument("--stack", required=True, help="the deployed stack's name")
    parser.add_argument("--dist", default="console/dist", help="the built console (npm run build)")
    parser.add_argument("--client-id", help="the console's client at JwtIssuer (OpenID Connect)")
    parser.add_argument("--scope", default="openid")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="added to the authorization request, e.g. resource=<JwtAudience> (RFC 8707) "
        "or audience=<JwtAudience> (Auth0)",
    )
    args = parser.parse_args()

    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param takes KEY=VALUE, got {item!r}")
        params[key] = value
    dist = Path(args.dist)
    if not (dist / "index.html").is_file():
        fail(f"{dist}/index.html is missing: build the console first (cd console && npm run build)")

    try:
        session = boto3.session.Session()
        outputs = stack_outputs(session.client("cloudformation"), args.stack)
        bucket = outputs["ConsoleBucketName"]
        config = console_config(outputs, args.client_id, args.scope, params)
        (dist / "config.json").write_text(json.dumps(config, indent=2) + "\n")

        s3 = session.client("s3")
        files = sorted(p for p in dist.rglob("*") if p.is_file())
        assets = [p for p in files if p.relative_to(dist).as_posix() not in ENTRY_POINTS]
        for path in assets + [dist / name for name in ENTRY_POINTS]:
            key = path.relative_to(dist).as_posix()
            s3.upload_file(
                str(path),
                bucket,
                key,
                ExtraArgs={
                    "ContentType": content_type(path),
                    "CacheControl": FRESH if key in ENTRY_POINTS else IMMUTABLE,
                },
            )
        session.client("cloudfront").create_invalidation(
            DistributionId=outputs["ConsoleDistributionId"],
            InvalidationBatch={
                "Paths": {"Quantity": 2, "Items": [f"/{name}" for name in ENTRY_POINTS]},
                "CallerReference": f"deploy-console-{time.time_ns()}",
            },
        )
    except (ClientError, BotoCoreError) as e:
        fail(str(e))
    print(f"uploaded {len(files)} files to s3://{bucket}; the console: {outputs.get('ConsoleUrl', '')}")


if __name__ == "__main__":
    main()
