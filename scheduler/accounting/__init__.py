"""Call accounting in the scheduler: the journal's copier to PostgreSQL, the database
schema and its migrations, and the stores reports read from (docs/accounting.md)."""
