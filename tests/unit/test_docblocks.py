"""How the doc test reads the README's and docs' shell blocks (the convention in docs/loadtest.md)."""

from __future__ import annotations

import pytest

from tests.integration._docblocks import DocFormatError, extract_blocks

DOC = """\
# Title

```bash
clickcash services start
```
<!-- expect: kafka: -->
<!-- expect: redis: -->

Some text.

<!-- not-run: needs a real Ray cluster -->
```bash
clickcash run --address auto
```

```
plain output, not a shell block
```

```python
print("not bash")
```

```bash
clickcash services stop
```
"""


def test_blocks_are_found_in_order_with_their_markers() -> None:
    blocks = extract_blocks("doc.md", DOC)
    assert [b.line for b in blocks] == [3, 12, 24]
    first, cluster, stop = blocks
    assert first.code == "clickcash services start\n"
    assert first.expects == ("kafka:", "redis:") and first.not_run is None
    assert cluster.not_run == "needs a real Ray cluster" and cluster.expects == ()
    assert stop.code == "clickcash services stop\n" and stop.not_run is None
    assert stop.name == "doc.md:24"


def test_a_marker_must_be_the_line_right_before_the_fence() -> None:
    text = "<!-- not-run: far away -->\n\n```bash\necho hi\n```\n"
    (block,) = extract_blocks("d.md", text)
    assert block.not_run is None


def test_an_unclosed_block_is_an_error_naming_the_line() -> None:
    with pytest.raises(DocFormatError, match=r"d\.md:2"):
        extract_blocks("d.md", "x\n```bash\necho\n")


def test_a_not_run_block_cannot_promise_output() -> None:
    with pytest.raises(DocFormatError, match="not-run"):
        extract_blocks("d.md", "<!-- not-run: r -->\n```bash\necho\n```\n<!-- expect: x -->\n")
