"""The CLI's exit codes, one convention for every command."""

OK = 0  # success, every check passed (or nothing to check)
FAILED = 1  # the run failed, an ERROR check failed, or (validate/init) a problem was found
CONFIG_ERROR = 2  # usage or configuration error before anything ran
SUCCEEDED_WITH_WARNINGS = 3  # the run succeeded but a WARN check failed
