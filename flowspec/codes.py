"""Every diagnostic code of flowspec, one named constant each, with what it means.

A code is part of the interface: it is printed (``error[E201]``), returned in JSON and
matched by users' scripts, so a code never changes meaning and is never reused. The first
digit groups them: E0xx the text is not a .flow program, E1xx names, values and files, E2xx
shapes, E3xx conditions and training, E4xx insert rules and ``extends``; Wxxx warnings.
:data:`CODES` maps each code to its meaning (the language reference lists it).
"""

from __future__ import annotations

#: code -> one line on what it means, in the order of this file
CODES: dict[str, str] = {}


def _code(code: str, meaning: str) -> str:
    if code in CODES:
        raise ValueError(f"diagnostic code {code} is declared twice")
    CODES[code] = meaning
    return code


# ---- E0xx: the text is not a .flow program ---------------------------------------------
E_UNEXPECTED = _code("E001", "a character or token the grammar does not allow there")
E_UNCLOSED = _code("E002", "the file ends inside a block or a statement")
E_ARG_COLON = _code("E003", "an argument written `name: value` instead of `name=value`")
E_REPEAT_COUNT = _code("E004", "`x` without a count after it")
E_REPEAT_FORM = _code("E005", "a repeat count not written `x N`")
E_SHAPE_FORM = _code("E006", "a shape not written CxHxW (or a class condition given a shape)")
E_INSERT_PLACE = _code("E007", "an `insert` without `before KIND` or `after KIND`")
E_NUMBER = _code("E008", "a number literal past int64, or a float literal that is not finite")
E_NESTING = _code("E009", "the file nests blocks, statements or expressions too deep")
E_VERSION = _code("E011", "a language version this flowspec does not read")

# ---- E1xx: names, values and files -------------------------------------------------------
E_UNKNOWN_NAME = _code("E101", "an unknown name in an expression")
E_UNKNOWN_BLOCK = _code("E102", "a call of a block that is not defined")
E_UNKNOWN_FLOW = _code("E103", "no such flow (or the file defines none)")
E_UNKNOWN_LAYER = _code("E104", "an unknown layer, or a layer's kind missing or unknown")
E_UNKNOWN_SETTING = _code("E105", "an unknown train setting or option, or one that does not apply")
E_UNKNOWN_NAMESPACE = _code("E107", "a name qualified by a namespace that is not imported")
E_UNKNOWN_PARAM = _code("E108", "--set names a parameter the flow does not have")
E_MISSING_VALUE = _code("E109", "a required argument or option not given")
E_DUPLICATE = _code("E110", "a definition, import namespace or condition declared twice")
E_DUPLICATE_ARG = _code("E111", "an argument given twice")
E_NO_DEFAULT = _code("E112", "a flow parameter without a default value")
E_WHICH_FLOW = _code("E113", "the file defines several flows and none was chosen")
E_UNEXPECTED_WORD = _code("E114", "an unexpected positional argument or word")
E_TYPE = _code("E121", "a value of the wrong type")
E_VALUE = _code("E122", "a value that is not one of the choices or is out of bounds")
E_OVERRIDE_TYPE = _code("E123", "--set gives a parameter a value of another type")
E_DOMAIN = _code("E124", "a parameter value outside its declared `in A..B` or `in [...]`")
E_CONDITION_FLOW = _code("E125", "the flow a condition is drawn from has errors")
E_READ = _code("E131", "a file or import that cannot be read (missing, unreadable, not UTF-8)")
E_IMPORT_CYCLE = _code("E132", "files that import each other")
E_IMPORT_DEPTH = _code("E133", "imports nested too many files deep")
E_DIVISION = _code("E140", "division by zero")
E_OVERFLOW = _code("E141", "arithmetic past int64, or to a float that is not finite")
E_INPUT_TWICE = _code("E151", "a flow that declares its input twice")
E_STRUCTURE = _code("E152", "a second prior, or a level or step nested in another")
E_NOT_IN_BLOCK = _code("E153", "a statement that belongs in a flow, written in a block")
E_RECURSION = _code("E160", "a block that calls itself")
E_SELF_REFERENCE = _code("E161", "a flow that extends or conditions itself")
E_CALL_DEPTH = _code("E162", "block calls nested too deep")
E_TOO_LARGE = _code("E170", "a flow too large: repeats, loops, statements or layers past a limit")

# ---- E2xx: shapes ------------------------------------------------------------------------
E_SQUEEZE = _code("E201", "a squeeze whose input H and W the factor does not divide")
E_FEW_CHANNELS = _code("E202", "a layer that needs at least 2 channels gets fewer")
E_PATCHES = _code("E203", "iSDP patches that cannot tile the image")
E_HEADS = _code("E204", "iSDP heads too many for the features of a patch")
E_LATENT_SHAPE = _code("E205", "the final latent is not the shape the flow expects")
E_LATENT_SIZE = _code("E206", "the latents do not hold as many numbers as the input")
E_NO_INPUT = _code("E207", "a flow without an `input` statement")
E_ENCODER_SCALE = _code("E208", "an srflow encoder head whose scale does not fit the shapes")
E_COND_SIZE = _code(
    "E209", "a layer whose condition, at the size it reads it, its convolutions cannot stride over"
)

# ---- E3xx: conditions and training -------------------------------------------------------
E_NEEDS_CONDITION = _code("E301", "a conditional layer without `on=CONDITION`")
E_UNKNOWN_CONDITION = _code("E302", "`on=` names no declared condition")
E_CONDITION_FLOW_CONDITIONAL = _code("E310", "a flow that models a condition is conditional")
E_CONDITION_FLOW_SHAPE = _code("E311", "a condition whose shape is not its flow's input")
E_CONDITION_TAP = _code("E312", "a layer that cannot take its condition from the condition's flow")
E_PRETRAIN_ENCODER = _code(
    "E313", "`pretrain encoder` without an encoder head to train, or outside task super_resolution"
)
E_FREEZE_ENCODER = _code("E314", "`freeze encoder` in a flow without condition encoders")
E_SCHEDULE_MILESTONES = _code(
    "E315", "a `schedule step` whose milestones are out of order or past the last step"
)

# ---- E4xx: insert rules and extends ------------------------------------------------------
E_INSERT_NO_MATCH = _code("E401", "an insert rule that matches no layer")
E_EXTENDS_ADDS = _code("E402", "a flow that extends another adds layers, calls or groups")

# ---- Wxxx: warnings ----------------------------------------------------------------------
W_UNUSED_BLOCK = _code("W001", "a block that is never called")
W_UNUSED_CONDITION = _code("W002", "a condition that no layer uses")
W_DEEP_STACK = _code("W003", "a deep stack of layers whose inverses lose float32 precision")
W_UNMIXED = _code("W004", "entries that pass unchanged through layers no coupling reaches")
W_UNTRAINED_HEAD = _code("W005", "an encoder's super-resolution head that nothing trains")
