"""Character-level LaTeX features: a small scanner that tracks math mode (``$``, ``$$``, ``\\(``, ``\\[``, math
environments) and brace groups, and marks the characters inside each containment (the delimiters stay outside).

The features are the paper's 12: is_frac, is_numerator, is_denominator, is_title, is_abstract, is_author,
is_subscript, is_superscript, is_reference, is_math, is_inline_math, is_display_math. Comments (``%``), ``\\verb``,
``\\lstinline``, verbatim environments (``VerbatimOut`` and ``filecontents`` too) and the arguments of configuration
commands (``\\lstset{alsoletter={*-$}}``, ``\\usepackage``, ``\\newcommand``, ...) are skipped; sub/superscripts and
fractions count inside math only; the note of a ``\\thanks`` or ``\\footnote`` in a title or author list is neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

LATEX_FEATURES = (
    "is_frac", "is_numerator", "is_denominator", "is_title", "is_abstract", "is_author", "is_subscript",
    "is_superscript", "is_reference", "is_math", "is_inline_math", "is_display_math",
)

#: features whose natural complement provides half of the negatives (paper, appendix B.2)
MIRRORS = {
    "is_numerator": "is_denominator", "is_denominator": "is_numerator",
    "is_subscript": "is_superscript", "is_superscript": "is_subscript",
    "is_inline_math": "is_display_math", "is_display_math": "is_inline_math",
}

DISPLAY_ENVIRONMENTS = {
    f"{name}{star}" for name in ("equation", "align", "gather", "multline", "flalign", "alignat", "eqnarray",
                                 "displaymath", "dmath", "dgroup") for star in ("", "*")
}
INLINE_ENVIRONMENTS = {"math"}
VERBATIM_ENVIRONMENTS = {"verbatim", "verbatim*", "Verbatim", "Verbatim*", "BVerbatim", "LVerbatim", "SaveVerbatim",
                         "VerbatimOut", "filecontents", "filecontents*", "lstlisting", "minted", "tcblisting",
                         "LTXexample", "comment", "alltt"}
#: commands whose arguments configure rather than typeset (a `$` there is a character, not math): all skipped
CONFIGURATION = {"lstset", "lstdefinestyle", "lstdefinelanguage", "lstnewenvironment", "lstloadlanguages", "usepackage",
                 "RequirePackage", "documentclass", "definecolor", "colorlet", "hypersetup", "setminted",
                 "newcommand", "renewcommand", "providecommand", "newenvironment", "renewenvironment",
                 "DeclareMathOperator", "DeclareRobustCommand", "NewDocumentCommand", "RenewDocumentCommand",
                 "fvset", "tcbset", "pgfkeys", "tikzset"}
#: inline code with any delimiter, like \verb (after optional arguments)
INLINE_CODE = {"verb", "verb*", "lstinline", "mintinline", "Verb"}
#: notes attached to a title or an author: their text is not the title or the author
NOTES = {"thanks", "footnote", "footnotetext"}
FRACTIONS = {"frac", "dfrac", "tfrac", "cfrac"}
REFERENCES = {
    "cite", "citep", "citet", "citealp", "citealt", "citeauthor", "citeyear", "parencite", "textcite", "autocite",
    "ref", "eqref", "autoref", "cref", "Cref", "pageref", "nameref", "vref",
}
#: commands inside math whose argument is text, a label or a key: no sub/superscripts are looked for inside
TEXT_ARGUMENTS = {"text", "textrm", "textit", "textbf", "textsf", "texttt", "mbox", "hbox", "label", "tag",
                  "intertext"}


#: characters that may change the scanner's state; everything else is skipped in one jump
INTERESTING = re.compile(r"[%\\$_^]")


class LatexSyntaxError(ValueError):
    """Unbalanced math or braces; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True)
class _Argument:
    """A macro argument: the span of its content, and whether it was a brace group (else one token)."""

    start: int
    end: int
    braced: bool

    @property
    def after(self) -> int:
        return self.end + 1 if self.braced else self.end


@dataclass
class _Math:
    kind: str  # "inline" or "display"
    closer: str  # "$", "$$", "\\)", "\\]" or an environment name
    start: int  # first character of the content


def latex_masks(text: str) -> dict[str, np.ndarray]:
    """A boolean mask over the characters of ``text`` for each of the 12 features."""
    return _Scanner(text).run()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.masks = {name: np.zeros(len(text), dtype=bool) for name in LATEX_FEATURES}
        self.math: _Math | None = None
        self.abstract_start: int | None = None

    def line(self, index: int) -> int:
        return self.text.count("\n", 0, index) + 1

    def mark(self, feature: str, start: int, end: int) -> None:
        self.masks[feature][start:end] = True

    def run(self) -> dict[str, np.ndarray]:
        text, i = self.text, 0
        while i < len(text):
            found = INTERESTING.search(text, i)
            if found is None:
                break
            i = found.start()
            char = text[i]
            if char == "%":
                i = self._end_of_line(i)
            elif char == "\\":
                i = self._command(i)
            elif char == "$":
                i = self._dollar(i)
            elif self.math is not None:
                i = self._script(i)
            else:
                i += 1  # a sub/superscript sign outside math
        if self.math is not None:
            raise LatexSyntaxError(self.line(self.math.start), f"math opened here is never closed "
                                                               f"(expected {self.math.closer!r})")
        self.masks["is_math"] = self.masks["is_inline_math"] | self.masks["is_display_math"]
        self.masks["is_frac"] = self.masks["is_numerator"] | self.masks["is_denominator"]
        return self.masks

    # -- math delimiters ------------------------------------------------------------------------------------------

    def _open(self, kind: str, closer: str, content_start: int) -> None:
        self.math = _Math(kind, closer, content_start)

    def _close(self, content_end: int) -> None:
        assert self.math is not None
        self.mark(f"is_{self.math.kind}_math", self.math.start, content_end)
        self.math = None

    def _dollar(self, i: int) -> int:
        double = self.text.startswith("$$", i)
        if self.math is None:
            self._open("display" if double else "inline", "$$" if double else "$", i + (2 if double else 1))
            return i + (2 if double else 1)
        if self.math.closer == "$":
            self._close(i)
            return i + 1
        if self.math.closer == "$$" and double:
            self._close(i)
            return i + 2
        return i + 1  # a stray $ inside display math: ignored

    # -- commands -------------------------------------------------------------------------------------------------

    def _command(self, i: int) -> int:
        name, after = self._name(i)
        math = self.math
        if name in ("(", "["):
            if math is None:
                self._open("inline" if name == "(" else "display", "\\)" if name == "(" else "\\]", after)
            return after
        if name in (")", "]"):
            if math is not None and math.closer == "\\" + name:
                self._close(i)
            return after
        if name in ("begin", "end"):
            return self._environment(name, i, after)
        if name in INLINE_CODE:
            return self._inline_code(name, after)
        if name.rstrip("*") in CONFIGURATION:
            return self._skip_groups(after)
        if name == "def":
            opening = self.text.find("{", after)
            return after if opening < 0 else self._matching_brace(opening) + 1
        if name in NOTES:
            note = self._argument(self._skip_optional(after))
            if note is not None and note.braced:
                for feature in ("is_title", "is_author"):
                    self.masks[feature][i : note.after] = False
            return after  # the note's own content is scanned (math in a footnote)
        if name in REFERENCES:
            group = self._argument(self._skip_optional(after))
            if group is not None and group.braced:
                self.mark("is_reference", group.start, group.end)
                return group.after
            return after
        if math is None and name in ("title", "author"):
            group = self._argument(self._skip_optional(after))
            if group is not None and group.braced:
                self.mark(f"is_{name}", group.start, group.end)
                return group.start  # scan the group's content too (math in a title)
            return after
        if math is not None and name in FRACTIONS:
            numerator = self._argument(after)
            denominator = self._argument(numerator.after) if numerator else None
            if numerator and denominator:
                self.mark("is_numerator", numerator.start, numerator.end)
                self.mark("is_denominator", denominator.start, denominator.end)
            return after  # the arguments are scanned as usual (nested fractions, scripts)
        if math is not None and name in TEXT_ARGUMENTS:
            group = self._argument(after)
            if group is not None and group.braced:
                return group.after
        return after

    def _environment(self, name: str, i: int, after: int) -> int:
        group = self._argument(after)
        if group is None or not group.braced:
            return after
        environment = self.text[group.start : group.end].strip()
        end = group.after
        if name == "begin":
            if self.math is None and environment in DISPLAY_ENVIRONMENTS | INLINE_ENVIRONMENTS:
                self._open("inline" if environment in INLINE_ENVIRONMENTS else "display", environment, end)
            elif self.math is None and environment in VERBATIM_ENVIRONMENTS:
                close = self.text.find(f"\\end{{{environment}}}", end)
                return len(self.text) if close < 0 else close
            elif self.math is None and environment == "abstract":
                self.abstract_start = end
            return end
        if self.math is not None and self.math.closer == environment:
            self._close(i)
        elif environment == "abstract" and self.abstract_start is not None:
            self.mark("is_abstract", self.abstract_start, i)
            self.abstract_start = None
        return end

    def _script(self, i: int) -> int:
        group = self._argument(i + 1)
        if group is not None:
            self.mark("is_subscript" if self.text[i] == "_" else "is_superscript", group.start, group.end)
        return i + 1

    # -- lexing helpers -------------------------------------------------------------------------------------------

    def _name(self, i: int) -> tuple[str, int]:
        """The control sequence at ``i`` (a backslash): its name and the index after it."""
        j = i + 1
        while j < len(self.text) and self.text[j].isalpha():
            j += 1
        if j == i + 1:  # control symbol: \$, \\, \(, ...
            return self.text[i + 1 : i + 2], min(i + 2, len(self.text))
        if j < len(self.text) and self.text[j] == "*":
            j += 1
        return self.text[i + 1 : j], j

    def _inline_code(self, name: str, after: int) -> int:
        """Skip \\verb|...|, \\lstinline[options]{...}, \\mintinline{language}{...} and the like."""
        i = self._skip_optional(after) if name != "verb" and name != "verb*" else after
        if name == "mintinline":
            language = self._argument(i)
            i = language.after if language is not None else i
        if i >= len(self.text):
            return i
        if self.text[i] == "{":
            close = self.text.find("}", i + 1)
        else:
            close = self.text.find(self.text[i], i + 1)
        return len(self.text) if close < 0 else close + 1

    def _skip_groups(self, i: int) -> int:
        """Skip what follows a configuration command: a control sequence (``\\newcommand\\x``), then every
        ``[...]`` and ``{...}`` group in a row."""
        j = self._skip_spaces(i)
        if j < len(self.text) and self.text[j] == "\\":
            j = self._name(j)[1]
        while True:
            k = self._skip_spaces(j)
            if k < len(self.text) and self.text[k] == "{":
                j = self._matching_brace(k) + 1
            elif (after := self._after_bracket(k)) is not None:
                j = after
            else:
                return j

    def _end_of_line(self, i: int) -> int:
        newline = self.text.find("\n", i)
        return len(self.text) if newline < 0 else newline + 1

    def _skip_optional(self, i: int) -> int:
        """Skip spaces and up to two optional arguments ``[...]``."""
        for _ in range(2):
            j = self._skip_spaces(i)
            after = self._after_bracket(j)
            if after is None:
                return j if j >= len(self.text) or self.text[j] != "[" else i  # an unclosed '[' is left alone
            i = after
        return self._skip_spaces(i)

    def _after_bracket(self, j: int) -> int | None:
        """The index after the ``]`` closing a ``[`` at ``j``; None when there is no bracket group at ``j``."""
        if j >= len(self.text) or self.text[j] != "[":
            return None
        close = self.text.find("]", j)
        return None if close < 0 else close + 1

    def _skip_spaces(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in " \t\n":
            i += 1
        return i

    def _argument(self, i: int) -> _Argument | None:
        """The content span of a macro argument at ``i``: a brace group's inside, one control word, or one
        character; None at the end of the text or before a closing brace."""
        i = self._skip_spaces(i)
        if i >= len(self.text) or self.text[i] in "}$":
            return None
        if self.text[i] == "{":
            return _Argument(i + 1, self._matching_brace(i), True)
        if self.text[i] == "\\":
            _, after = self._name(i)
            return _Argument(i, after, False)
        return _Argument(i, i + 1, False)

    def _matching_brace(self, i: int) -> int:
        """Index of the ``}`` closing the ``{`` at ``i`` (escaped braces and comments skipped)."""
        depth, j = 0, i
        while j < len(self.text):
            char = self.text[j]
            if char == "\\":
                j += 2
                continue
            if char == "%":
                j = self._end_of_line(j)
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return j
            j += 1
        raise LatexSyntaxError(self.line(i), "brace opened here is never closed")
