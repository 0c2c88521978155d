DROP TABLE cache_entries;
DROP TABLE webhooks;
DROP TABLE plex_items;
DROP TABLE integrations;
