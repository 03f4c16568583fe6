"""Where a source file's code begins: after the licence header and other leading comments.

C and C++ files often open with dozens of lines of licence text; averaging activations over them measures the
licence, not the language. The paper skipped a fixed 50 tokens ("a very coarse cleaning attempt", appendix B.2);
probekit strips every leading comment block first.
"""

from __future__ import annotations

import re

#: one leading block: whitespace, then a comment in any common syntax, a shebang, an XML declaration or doctype, a
#: PHP open tag, or a Python module docstring. '#' comments must not be preprocessor directives (#include).
_LEADING = re.compile(
    r"""\s*(?:
        //[^\n]*                       # C, C++, Go, JavaScript, PHP line comment
      | /\*.*?\*/                      # block comment
      | \#(?![a-zA-Z])[^\n]*           # shell / Python comment (not #include, #define)
      | \#![^\n]*                      # shebang
      | <!--.*?-->                     # HTML / XML comment
      | <\?xml.*?\?>                   # XML declaration
      | <!DOCTYPE[^>]*>                # doctype
      | <\?php\b                       # PHP open tag
      | declare\s*\([^)]*\)\s*;          # PHP declare(strict_types=1); (before the licence in Composer)
      | \"\"\".*?\"\"\" | '''.*?'''    # Python module docstring
    )""",
    re.DOTALL | re.VERBOSE,
)


def code_start(text: str) -> int:
    """Index of the first character after the file's leading comments (0 when it starts with code)."""
    position = 0
    while (match := _LEADING.match(text, position)) is not None and match.end() > position:
        position = match.end()
    return position + len(text[position:]) - len(text[position:].lstrip())
