"""The exit codes of every `cdp-assets` command (one convention, documented in docs/commands.md).

- ``OK`` (0): success, every check passed (or there was nothing to check).
- ``FAILED`` (1): the run failed, or a check of severity ERROR failed, or (validate, init) a
  problem was found.
- ``CONFIG_ERROR`` (2): a usage or configuration error before anything ran: a bad config, a
  missing credentials variable, bad arguments.
- ``SUCCEEDED_WITH_WARNINGS`` (3): the run succeeded, but one or more checks of severity WARN
  failed. A script can treat it as success (``[ $? -eq 0 -o $? -eq 3 ]``) or alert on it.
"""

OK = 0
FAILED = 1
CONFIG_ERROR = 2
SUCCEEDED_WITH_WARNINGS = 3
