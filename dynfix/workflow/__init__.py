"""The whole flow on one call (``dynfix flow``): the API's stages chained (:mod:`.run`), with
reports (:mod:`.report`) and plots (:mod:`.plots`), the simulator chosen by :mod:`.simulator`
and names shown short by :mod:`.names`. :mod:`.options` holds its options alone, so the CLI
reads the defaults without loading the API.

The design-space sweep (``dynfix sweep``): the same stages as Dask tasks (:mod:`.sweep`, the
tasks in :mod:`.sweep_tasks`), its Pareto front (:mod:`.pareto`) and its table and plot
(:mod:`.sweep_report`)."""
