from crm_mailer.cli import main

raise SystemExit(main())
