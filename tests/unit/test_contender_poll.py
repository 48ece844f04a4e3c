"""The benchmark lab's own overhead: the clickcash contender's driver looks for the end of a throughput run
rarely while it is far and every ``POLL_S`` once it is near, so the end time keeps its precision without a
Ray call per 20 ms throughout; compare warms a fresh broker's transaction path before the contenders run."""

from clickcash.loadtest.contenders.clickcash_app import FAR_POLL_S, NEAR_END_MIN, POLL_S, poll_interval_s

END = {0: 30_000, 1: 30_000, 2: 40_000}


def test_far_from_the_end_the_driver_looks_rarely() -> None:
    assert poll_interval_s({}, END) == FAR_POLL_S
    assert poll_interval_s({0: 20_000, 1: 20_000, 2: 20_000}, END) == FAR_POLL_S
    assert FAR_POLL_S > POLL_S


def test_near_the_end_the_driver_looks_every_poll() -> None:
    # 2 % of 100,000 left (2,000 records)
    assert poll_interval_s({0: 29_000, 1: 29_000, 2: 40_000}, END) == POLL_S
    assert poll_interval_s(END, END) == POLL_S


def test_a_lagging_partition_is_not_hidden_by_others_past_their_end() -> None:
    # timer commands the app writes into the input topic move partitions 0 and 1 past the pre-produced end
    committed = {0: 60_000, 1: 60_000, 2: 10_000}
    assert poll_interval_s(committed, END) == FAR_POLL_S


def test_a_small_input_is_near_from_the_start() -> None:
    small = {0: NEAR_END_MIN // 2, 1: NEAR_END_MIN // 2}
    assert poll_interval_s({}, small) == POLL_S


def test_compare_warms_the_broker_unless_told_not_to() -> None:
    import argparse

    from clickcash.loadtest.contenders.compare import add_compare_parser
    from clickcash.loadtest.traffic.warm_broker import WARM_TRANSACTIONS

    parser = argparse.ArgumentParser()
    add_compare_parser(parser.add_subparsers())
    assert parser.parse_args(["compare"]).warm_transactions == WARM_TRANSACTIONS > 0
    assert parser.parse_args(["compare", "--warm-transactions", "0"]).warm_transactions == 0
