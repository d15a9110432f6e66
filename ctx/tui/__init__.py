"""The Textual dashboard behind ``ctx dash``; :mod:`ctx.tui.data` and :mod:`ctx.tui.link` never import Textual."""
