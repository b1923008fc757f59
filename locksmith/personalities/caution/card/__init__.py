"""The smart-card side of the CLI: PC/SC (`pcsc`), which cards are there (`survey`), a holder's
share and signature on a card (`holder`), and `caution card status` (`status`)."""
