"""BRPO-Ind: independent learning.

Per-agent IQL critics ``Q^i(s, a_i)`` on the team reward; independent behaviour scores
``mu_i(a_i | s)``; decentralised actors ``pi_i(o_i)``."""

from og_marl_omsd.systems.base import ScoreRegularisedSystem


class BRPOIndSystem(ScoreRegularisedSystem):
    __doc__ = __doc__

    critic_kind = "independent"
    factorisation = "independent"
    centralised_actor = False
