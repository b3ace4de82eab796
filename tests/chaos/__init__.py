"""Chaos tests: kill -9 of each part of the system at random points of
scripted turns, then check that nothing acknowledged was lost, nothing was
shown twice, every turn ended once, locks are free and no mutating verb ran
twice. See test_kill9.py."""
