from tgdav.cli import main

raise SystemExit(main())
