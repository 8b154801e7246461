"""Distillation losses: teacher, PD, CFD and the RDD relational terms."""
