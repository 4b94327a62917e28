// The Mosquitto plugin of `devid hub`: filled in by the issue-6 work.
