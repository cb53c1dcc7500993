"""The rack over a real RDMA device: the sharing scenario of test_rack.py
(three daemons, each object fetched once from the backend, byte-identical
reads through the shim on every node, partition and replicate) with the
`verbs;ofi_rxm` provider, bound to the device's IPv4 address.

Needs an RDMA device (InfiniBand, RoCE, iWARP): when ibv_get_device_list()
finds none, as on CI machines and on these VMs, it exits 77 and says so.
GRANARY_RDMA_ADDR=IP picks the address when the device's own cannot be found.
The locked-memory limit must cover what verbs pins (ulimit -l; granaryd says
so clearly when it is too small).
"""
import ctypes
import ctypes.util
import os
import subprocess
import sys

from harness import Skip, require_rack, run

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import test_rack  # noqa: E402


def rdma_devices():
    """Names of the RDMA devices libibverbs sees ([] without the library)."""
    name = ctypes.util.find_library("ibverbs") or "libibverbs.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return []
    lib.ibv_get_device_list.restype = ctypes.POINTER(ctypes.c_void_p)
    lib.ibv_get_device_list.argtypes = [ctypes.POINTER(ctypes.c_int)]
    lib.ibv_get_device_name.restype = ctypes.c_char_p
    lib.ibv_get_device_name.argtypes = [ctypes.c_void_p]
    lib.ibv_free_device_list.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
    n = ctypes.c_int(0)
    devs = lib.ibv_get_device_list(ctypes.byref(n))
    if not devs:
        return []
    names = [lib.ibv_get_device_name(devs[i]).decode() for i in range(n.value)]
    lib.ibv_free_device_list(devs)
    return names


def device_ipv4(dev):
    """The first IPv4 address of a network interface of RDMA device @dev."""
    base = "/sys/class/infiniband/%s/device/net" % dev
    try:
        ifaces = sorted(os.listdir(base))
    except OSError:
        return None
    for ifc in ifaces:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", ifc],
                             capture_output=True, text=True).stdout.split()
        if "inet" in out:
            return out[out.index("inet") + 1].split("/")[0]
    return None


def main(wd):
    require_rack()
    devs = rdma_devices()
    if not devs:
        raise Skip("no RDMA device (ibv_get_device_list found none); the rack runs over "
                   "tcp;ofi_rxm and shm in test_rack.py")
    addr = os.environ.get("GRANARY_RDMA_ADDR") or next(
        (a for a in map(device_ipv4, devs) if a), None)
    if not addr:
        raise Skip("RDMA device %s has no IPv4 address (set GRANARY_RDMA_ADDR)" %
                   ", ".join(devs))
    print("RDMA devices %s, address %s" % (", ".join(devs), addr))
    test_rack.scenario_share(wd, "verbs;ofi_rxm", "-verbs", host=addr)


if __name__ == "__main__":
    run(main, "rack_rdma")
