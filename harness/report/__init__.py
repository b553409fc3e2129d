"""The compatibility report: result folders in, a page, JSON, JUnit and Markdown out.

Data flows one way (docs/ARCHITECTURE.md): the report reads result folders
(and an optional baseline report and bench file), never artifacts or the
runner.

- `resultsdir` reads and validates one result folder;
- `merge` combines folders (the later line of a cell wins, conflicts listed);
- `model` turns merged lines into cells, re-applying the expectations;
- `aggregate` counts them (the source x target grid, format view, release grid, baseline diff);
- `refactors` groups the cells that load into changed model code, per refactor (remap, migration verdict);
- `jsonout`, `junit`, `markdown`, `html` (with ``templates/``) write the four outputs;
- `repro` words the commands that re-run one cell; `bench` reads bench figures;
- `build` runs the whole pipeline (``harness.cli`` wires ``report`` and ``merge``).
"""
