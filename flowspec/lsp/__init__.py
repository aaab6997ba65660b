"""``flowspec lsp``: a Language Server Protocol server for .flow files.

The pieces below :mod:`flowspec.lsp.server` are plain Python over the compiler's public
stages and know nothing of the protocol's transport: :mod:`~flowspec.lsp.document` (one
open file: text, UTF-16 positions, its analysis), :mod:`~flowspec.lsp.navigate`
(definitions, references, symbols), :mod:`~flowspec.lsp.hover`,
:mod:`~flowspec.lsp.complete` and :mod:`~flowspec.lsp.actions`. Only ``server`` imports
pygls (the optional extra ``flowspec[lsp]``).
"""
