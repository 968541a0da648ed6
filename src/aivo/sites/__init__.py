"""Federation across sites on Flower: the site and coordinator apps and their protocol.

A *site* (a school or district) keeps its learners, interactions, clones and privacy ledger in
its own registry and runs a Flower ClientApp behind a SuperNode; the *coordinator* runs the
ServerApp behind the SuperLink and holds versions, rounds, audit and round-level epsilon, and
no interaction rows. What crosses the wire each round (`protocol`): the round's settings and
the version's shared parameters down; each site's sum of its sampled learners' clipped updates
with their counts up (through SecAgg+, so that the coordinator sees only the sum across
sites); metric sums of the federated evaluation up.

The apps here take their work as injected handlers (`SiteHandler`, `CoordinatorHooks`): the use
cases behind them live in `aivo.services.federation` (coordinator) and `aivo.services.site`.
"""
