"""The release build's binary sizes against their budget: `infra/dev release` runs it after
`sam build`. Prints a Markdown table (docs/performance.md keeps the last one) and exits 1 when a
function's stripped arm64 `bootstrap` is over the budget, or when the build holds none.
"""

import sys
from pathlib import Path

BUDGET_BYTES = 8 * 1024 * 1024


def main() -> None:
    build = Path(sys.argv[1] if len(sys.argv) > 1 else ".aws-sam/build")
    binaries = sorted(build.glob("*/bootstrap"))
    if not binaries:
        print(f"release-sizes: no */bootstrap under {build}: run sam build first", file=sys.stderr)
        sys.exit(1)
    print("| function | bootstrap (MiB) | budget (MiB) |")
    print("|---|---|---|")
    over = []
    for binary in binaries:
        size = binary.stat().st_size
        mark = "" if size <= BUDGET_BYTES else " **over**"
        print(f"| {binary.parent.name} | {size / 1048576:.2f}{mark} | {BUDGET_BYTES / 1048576:.0f} |")
        if size > BUDGET_BYTES:
            over.append(binary.parent.name)
    if over:
        print(f"release-sizes: over {BUDGET_BYTES // 1048576} MiB: {', '.join(over)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
