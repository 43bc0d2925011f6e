"""
C{mgcpload}, the load generator for the call agent, one job per module:

  - L{population}: the switch INI for K gateways of M lines (C{config});
  - L{options}: what a run does (L{LoadOptions}) and the failure causes;
  - L{procstat}: the agent's, the tool's and the machine's CPU from C{/proc};
  - L{report}: the L{Report}, its text, and which process saturated;
  - L{script}: the basic call every engine plays, as a state machine;
  - L{schedule}: the rate scheduler, the measured window and the outcomes;
  - L{scripted}: the engine on full simulated gateways (L{LoadRunner});
  - L{cli}: the command line (L{main}, the console script).

The names below are the package's public face (tests, benchmarks and the
console script C{mgcpload = mgcpswitch.load:main} import them from here).
"""

from .cli import build_parser, main, options_from_args
from .options import CAUSES, LoadOptions
from .population import gateway_layout, make_config, number_width
from .procstat import CpuSampler, find_agent_pid
from .report import Report, format_registration, format_report, percentile, saturation_verdict
from .scripted import LoadRunner

__all__ = [
    "CAUSES",
    "CpuSampler",
    "LoadOptions",
    "LoadRunner",
    "Report",
    "build_parser",
    "find_agent_pid",
    "format_registration",
    "format_report",
    "gateway_layout",
    "main",
    "make_config",
    "number_width",
    "options_from_args",
    "percentile",
    "saturation_verdict",
]
