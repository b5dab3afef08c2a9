"""OMSD, offline MARL with sequential score decomposition.

Joint IQL critic ``Q_tot(s, a)``; sequential behaviour score ``mu(a_i | s, a_<i)`` with the
prefix actions taken from the current actors; decentralised actors ``pi_i(o_i)``."""

from og_marl_omsd.systems.base import ScoreRegularisedSystem


class OMSDSystem(ScoreRegularisedSystem):
    __doc__ = __doc__

    critic_kind = "joint"
    factorisation = "sequential"
    centralised_actor = False
