"""BRPO-FAC: the naive factorisation of the behaviour regulariser.

Joint IQL critic ``Q_tot(s, a)``; independent behaviour scores ``mu_i(a_i | s)``;
decentralised actors ``pi_i(o_i)``."""

from og_marl_omsd.systems.base import ScoreRegularisedSystem


class BRPOFACSystem(ScoreRegularisedSystem):
    __doc__ = __doc__

    critic_kind = "joint"
    factorisation = "independent"
    centralised_actor = False
