"""MPI harnesses: sync, parameter-server (async) and hybrid data-parallel training.

Run one configuration with ``mpiexec -n N python -m mpi4py -m perfmodel.harness ...`` or a
sweep with ``perfmodel scale``. See :mod:`perfmodel.harness.train` for the algorithms.
"""
