// MediaNestMigrations
