"""Producer ids now; the transaction coordinator later."""
