"""The server's overlapped stages through the real hub: every request answered once,
with the right answer, with the pipeline on and working in turns."""

from __future__ import annotations

import pytest

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.server.ledger import ANSWERED
from animalid.testing.harness import assert_answers, ledger_states, photo, replies_by_request, running_server, wait_for

PHOTOS = ("tiger.png", "dog.png", "bison.png")


@pytest.mark.parametrize("pipeline", ["yes", "no"])
def test_a_burst_is_answered_once_each_with_its_own_answer(configs, classifier, pipeline):
    config = configs(receive="imap", server_receive="imap", pipeline=pipeline)
    names = [f"{i}-{PHOTOS[i % 3]}" for i in range(10)]
    with edge.requester(load_config(config)) as requester:
        # Sent before the server starts, so that one pass takes them all and
        # (with the pipeline) sends early replies while later ones are classified.
        sent = {requester.send([(name, photo(name.partition("-")[2]))]): name for name in names}
        with running_server(config, classifier) as server:
            answers = requester.wait(list(sent), timeout=300)
            wait_for(lambda: list(ledger_states(config).values()).count(ANSWERED) >= len(names),
                     what="every request recorded")
            assert server.classify_seconds > 0 and server.answer_seconds > 0
    for message_id, name in sent.items():
        assert_answers(answers[message_id], [name])
    # The requester deleted each reply it read; the server has stopped, so a
    # second reply to any request would still be in the client's INBOX.
    assert replies_by_request(config) == {}
