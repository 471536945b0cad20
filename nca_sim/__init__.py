"""A Numba simulator for learned cellular-automaton rules. Imports no torch."""

from pathlib import Path

from nca_sim.rule import Architecture, Rule, RuleFileError, load_rule, save_rule

__all__ = ["Architecture", "Rule", "RuleFileError", "default_rule_path", "load_rule", "save_rule"]


def default_rule_path() -> Path:
    """Return the path of the rule shipped with nca, ``nca_sim/default_rule/default.npz``.

    Raises
    ------
    RuleFileError
        When the installation lacks the file.
    """
    path = Path(__file__).resolve().parent / "default_rule" / "default.npz"
    if not path.is_file():
        raise RuleFileError(
            f"the default rule {path} is missing from this installation; "
            "pass a rule file with --rule (write one with `nca export CHECKPOINT -o RULE`)"
        )
    return path
