from gmmgan.cli import main

raise SystemExit(main())
