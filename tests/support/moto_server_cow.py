"""moto_server whose DynamoDB transactions back up only what they touch, and whose SQS sends do
not count the queue's messages.

moto backs a transaction up by deep-copying every table it names (for the rollback of a cancelled
transaction), once per item: O(table size). Real DynamoDB's transactions cost O(items in the
transaction). With 100,000 items in a table, every moto transaction takes tens of seconds, which
would measure the emulator, not Keysmith. This backup is the same rollback for the same cases: the
table's item maps are copied (cheap: references), and the items the transaction names by key
(the ones moto mutates in place) are deep-copied. A `Put` replaces its item object, so the
reference in the backup stays the old one. Transactions run one at a time here.

moto's SQS `SendMessage` reads `queue.attributes` (for `ContentBasedDeduplication`) several times
per message, and that property counts the queue's visible, delayed and in-flight messages each
time: O(queue length) per message sent (measured: 100 `SendMessageBatch` calls in 11 s, the third
hundred in 49 s). Real SQS sends in constant time. While a message is being sent here, the
property leaves the three counts out; everything else reads them as before.
"""

import copy as _copy
import sys
import threading
from collections import defaultdict

import moto.dynamodb.models as models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

_real_transact = models.DynamoDBBackend.transact_write_items
_lock = threading.Lock()


class _Backup:
    """Stands in for the `copy` module inside moto's DynamoDB backend during one transaction."""

    def __init__(self, touched):
        self.touched = touched

    def copy(self, x):
        return _copy.copy(x)

    def deepcopy(self, x, memo=None):
        if not isinstance(x, Table):
            return _copy.deepcopy(x, memo)
        snap = _copy.copy(x)
        items = defaultdict(dict)
        for h, v in x.items.items():
            items[h] = dict(v) if isinstance(v, dict) else v
        for h, r in self.touched.get(x.name, []):
            if r is None:
                if h in x.items:
                    items[h] = _copy.deepcopy(x.items[h])
            elif h in x.items and r in x.items[h]:
                items[h][r] = _copy.deepcopy(x.items[h][r])
        snap.items = items
        return snap


def _transact(self, transact_items):
    touched = {}
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        name, key = op.get("TableName"), op.get("Key")
        if not key or name not in self.tables:
            continue
        table = self.tables[name]
        h = DynamoType(key[table.hash_key_attr])
        r = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        touched.setdefault(name, []).append((h, r))
    with _lock:
        saved = models.copy
        models.copy = _Backup(touched)
        try:
            return _real_transact(self, transact_items)
        finally:
            models.copy = saved


models.DynamoDBBackend.transact_write_items = _transact


import moto.sqs.models as _sqs  # noqa: E402

_queue_attributes = _sqs.Queue.attributes.fget
_sending = threading.local()


class _WithoutCounts:
    """A queue as `Queue.attributes` sees it while sending: the same, minus the message counts."""

    BASE_ATTRIBUTES = [a for a in _sqs.Queue.BASE_ATTRIBUTES if not a.startswith("ApproximateNumberOfMessages")]

    def __init__(self, queue):
        self._queue = queue

    def __getattr__(self, name):
        return getattr(self._queue, name)


def _attributes(self):
    if getattr(_sending, "on", False):
        return _queue_attributes(_WithoutCounts(self))
    return _queue_attributes(self)


def _sending_wrapper(real):
    def send(*args, **kwargs):
        outer = getattr(_sending, "on", False)
        _sending.on = True
        try:
            return real(*args, **kwargs)
        finally:
            _sending.on = outer

    return send


_sqs.Queue.attributes = property(_attributes)
_sqs.SQSBackend.send_message = _sending_wrapper(_sqs.SQSBackend.send_message)
_sqs.SQSBackend._validate_message = _sending_wrapper(_sqs.SQSBackend._validate_message)

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
