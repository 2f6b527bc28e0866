-- An issue's preheader: the hidden preview line mail clients show after the subject.
ALTER TABLE issues ADD COLUMN preheader TEXT;
