# Runs one firmware test module under MicroPython: every test_* function,
# one "PASS name" / "FAIL name" line each, then "DONE passed=P failed=F".
# Usage: micropython -X heapsize=64k mprun.py MODULE [PATH ...]

import gc
import sys


def main():
    module_name = sys.argv[1]
    for path in sys.argv[2:]:
        sys.path.insert(0, path)
    module = __import__(module_name)
    passed = failed = 0
    teardown = getattr(module, "teardown_function", None)
    for name in sorted(dir(module)):
        if not name.startswith("test_"):
            continue
        gc.collect()
        try:
            getattr(module, name)()
        except Exception as e:  # report and go on: one line per test
            failed += 1
            print("FAIL", name, repr(e))
            sys.print_exception(e)
        else:
            passed += 1
            print("PASS", name)
        if teardown:
            teardown(None)
    gc.collect()
    print("DONE passed=%d failed=%d heap_free=%d" % (passed, failed, gc.mem_free()))


main()
