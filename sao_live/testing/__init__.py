"""What the test suite and the benchmarks share: a real `sao-live serve` subprocess, OSC clients
that collect its replies (`testing.daemon`), a private JACK server and a recorder (`testing.jack`).

Nothing in the daemon imports this package. `testing.jack` needs the JACK-Client package (the
`test` extra) and a `jackd` binary.
"""
