"""A report written twice: markdown for the repository, and one self-contained HTML file.

The HTML is the markdown rendered by markdown-it-py (CommonMark plus tables), with every image
inlined as a base64 data URI, so the file can be mailed or opened anywhere without its plots/.
"""

import base64
import html
import os
import re

from markdown_it import MarkdownIt

_IMAGE_SRC = re.compile(r'<img src="([^"]+)"')
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 75rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; }
code, pre { background: #f6f6f6; }
"""


def markdown_table(header: list[str], rows: list[list]) -> str:
  """A GitHub-flavoured markdown table; '|' inside a cell is escaped so columns stay aligned."""
  cell = lambda value: str(value).replace("|", "\\|").replace("\n", " ")
  lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
  return "\n".join(lines)


def markdown_to_html(markdown: str, title: str, image_dir: str) -> str:
  """A complete HTML5 document; image paths are read relative to `image_dir` and inlined."""
  body = MarkdownIt("commonmark").enable("table").render(markdown)
  body = _IMAGE_SRC.sub(lambda m: f'<img src="{_data_uri(os.path.join(image_dir, m[1]))}"', body)
  return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
          f"<body>\n{body}</body>\n</html>\n")


def _data_uri(path: str) -> str:
  """The file as a data: URI; a missing or unknown image is an error, not a broken picture."""
  path = html.unescape(path)
  mime = _MIME.get(os.path.splitext(path)[1].lower())
  if mime is None:
    raise ValueError(f"cannot embed {path}: only {sorted(_MIME)} images are supported.")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"the report links {path}, which does not exist; re-run the "
                            "experiment that draws it, or drop the link.")
  with open(path, "rb") as f:
    return f"data:{mime};base64,{base64.b64encode(f.read()).decode('ascii')}"
