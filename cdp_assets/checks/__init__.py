"""Asset checks, one module per phase: the validation rules of SPEC §4 live here only."""
