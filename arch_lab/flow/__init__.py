"""Objective-agnostic flow-matching pieces: paths, time samplers, couplings, ODE solvers, guidance, loss, sampling."""

from __future__ import annotations

from arch_lab.flow.couplings import Coupling, ExactOTCoupling, IndependentCoupling, make_coupling
from arch_lab.flow.guidance import guided_velocity
from arch_lab.flow.objective import FlowBatch, FlowMatchingObjective, LossOutput, drop_condition
from arch_lab.flow.paths import PathSample, ProbabilityPath, StraightPath
from arch_lab.flow.sampling import generate
from arch_lab.flow.solvers import METHODS, Field, SolveResult, odeint
from arch_lab.flow.time import LogitNormalTime, TimeSampler, UniformTime, make_time_sampler

__all__ = [
    "METHODS",
    "Coupling",
    "ExactOTCoupling",
    "Field",
    "FlowBatch",
    "FlowMatchingObjective",
    "IndependentCoupling",
    "LogitNormalTime",
    "LossOutput",
    "PathSample",
    "ProbabilityPath",
    "SolveResult",
    "StraightPath",
    "TimeSampler",
    "UniformTime",
    "drop_condition",
    "generate",
    "guided_velocity",
    "make_coupling",
    "make_time_sampler",
    "odeint",
]
