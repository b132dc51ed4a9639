"""The recurrent cell space of DARTS/DATA (language modelling, paper Section 4.2)."""
