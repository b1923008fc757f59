"""Fuzz suites: every parser of untrusted input, fed random and mutated input (issue 10 item 8).

One module per area (`test_fuzz_<area>.py`); `strategies.py` holds the shared mutation
strategies and the `only` helper that states the invariant: a parser given anything may
return, or raise one of its *own* exception types, and nothing else, within a bounded time.
`make test` runs these at a small, derandomised budget; `make fuzz` runs only this directory
with `FUZZ_EXAMPLES=5000` and fresh randomness (conftest.py).
"""
