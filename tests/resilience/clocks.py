"""clocks: each node's wall clock of its own, so that the `clock_step`
fault can step one node's clock as `date -s`, a VM resumed from a
snapshot or a misconfigured NTP client steps a machine's:

    clocks = Clocks(build_dir)
    clocks.attach(node)        # before the node's processes start
    clocks.step(node, 600)     # its CLOCK_REALTIME runs 600 s ahead
    clocks.step(node, 0)       # and back in step
    clocks.reset_all()

Every process of the node (the agent, run-postgres, PostgreSQL, what they
exec) loads tests/resilience/clockshift.c (LD_PRELOAD), which adds the
offset written in <node dir>/clock to every read of the wall clock; the
monotonic clock is left alone, as the kernel leaves it when the wall clock
is set. The offset is read again at most every 50 ms."""

import os

LIBRARY = os.path.join("tests", "resilience", "clockshift.so")
FILE = "clock"


class Clocks:
    def __init__(self, build_dir):
        self.library = os.path.join(os.path.abspath(build_dir), LIBRARY)
        self.files = {}             # node name -> offset file
        self.offsets = {}           # node name -> seconds

    @staticmethod
    def possible(build_dir):
        """Why the clocks cannot be shifted with this build, or None."""
        path = os.path.join(build_dir, LIBRARY)
        if not os.path.exists(path):
            return f"{path} not built"
        return None

    def attach(self, node):
        """The node's processes (started from now on) read their wall clock
        through the library, at offset 0."""
        os.makedirs(node.dir, exist_ok=True)
        path = os.path.join(node.dir, FILE)
        self.files[node.name] = path
        self._write(node.name, 0)
        preload = os.environ.get("LD_PRELOAD")
        asan = os.environ.get("ASAN_OPTIONS")
        node.extra_env.update({
            "CLOCKSHIFT_FILE": path,
            "LD_PRELOAD": self.library + (f":{preload}" if preload else ""),
            # An ASan build: the runtime need not come first.
            "ASAN_OPTIONS": (f"{asan}:" if asan else "")
            + "verify_asan_link_order=0",
        })

    def _write(self, name, seconds):
        path = self.files[name]
        tmp = f"{path}.new"
        with open(tmp, "w", encoding="ascii") as handle:
            handle.write(f"{round(seconds * 1000)}\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        self.offsets[name] = seconds

    def step(self, node, seconds):
        """From now on the node's wall clock reads `seconds` off the real
        one (0: in step again)."""
        self._write(node.name, seconds)

    def offset(self, node):
        return self.offsets.get(node.name, 0)

    def reset_all(self):
        for name in self.files:
            if self.offsets.get(name):
                self._write(name, 0)
