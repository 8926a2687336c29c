"""What several experiment scripts share."""

import os

from haviv_tf.base import artifacts


def write_tables(out: str, lines) -> str:
  """Writes `lines` as `out`/tables.md (atomically), prints them and returns the text."""
  text = "\n".join(lines) + "\n"
  artifacts.write_text(os.path.join(out, "tables.md"), text)
  print(text)
  return text
