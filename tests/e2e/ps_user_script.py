"""A user's own parameter_server script, for `python -m launch`: it belongs on the chief.

On the chief it builds the strategy from TF_CONFIG (`tfdist.make_strategy`), puts a variable
on the ps task and runs a function on the workers, so it needs real tfdist servers on the
ps and worker tasks. Run on any other task it says so and exits 5.
"""

import json
import os
import sys

task = json.loads(os.environ["TF_CONFIG"])["task"]
if task["type"] != "chief":
    print(
        f"user script on {task['type']}:{task['index']}: it belongs on the chief only", flush=True
    )
    sys.exit(5)

import tensorflow as tf  # noqa: E402

import tfdist  # noqa: E402

distribution = tfdist.make_strategy("parameter_server", cluster=tfdist.read_tf_config())
with distribution.scope():
    total = tf.Variable(1.0)


@tf.function
def step():
    total.assign_add(1.0)
    return tf.distribute.coordinator.experimental_get_current_worker_index()


results = [distribution.coordinator.schedule(step) for _ in range(4)]
distribution.coordinator.join()
workers = sorted({int(result.fetch()) for result in results})
print(f"user script on chief: total {float(total.numpy())} from workers {workers}", flush=True)
