"""BRPO-JAL: joint-action learning, the centralised upper bound.

Joint IQL critic ``Q_tot(s, a)``; joint behaviour score ``mu(a | s)``; one centralised actor
for the joint action on all agents' observations."""

from og_marl_omsd.systems.base import ScoreRegularisedSystem


class BRPOJALSystem(ScoreRegularisedSystem):
    __doc__ = __doc__

    critic_kind = "joint"
    factorisation = "joint"
    centralised_actor = True
