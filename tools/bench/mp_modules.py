# MicroPython side of `signet bench agent`'s code by module (runs on the unix port).
# Usage: micropython -X heapsize=H mp_modules.py LIBDIR MODULE...
# Imports the MODULEs in the order given (the host orders each after the modules it
# imports) and prints, for each, module_bytes NAME=N: the heap its import holds after
# a collection. Apart from mp_agent.py so that its code is not in that script's figures.
import gc
import sys


class _Names:
    pass


def main():
    # Frozen modules first, as on a board (MICROPYPATH="" leaves ".frozen" off the path).
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, ".frozen")
    # Names are interned in pools that grow by doubling: the module whose names fill one
    # would be charged with the next, larger pool. Grown here first, so each module is
    # charged its own code and names and the pools' tables none.
    holder = _Names()
    for i in range(1500):
        setattr(holder, "q%d" % i, None)
    holder = None
    for name in sys.argv[2:]:
        gc.collect()
        before = gc.mem_alloc()
        __import__(name)
        gc.collect()
        print("module_bytes %s=%d" % (name, gc.mem_alloc() - before))


main()
