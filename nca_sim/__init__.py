"""A Numba simulator for learned cellular-automaton rules. Imports no torch."""

from nca_sim.rule import Architecture, Rule, RuleFileError, load_rule, save_rule

__all__ = ["Architecture", "Rule", "RuleFileError", "load_rule", "save_rule"]
