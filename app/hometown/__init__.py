"""The HOMETOWN scenario: exact geo-local top-k over PostGIS, scored in numpy."""
