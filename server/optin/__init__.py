"""Double opt-in (GDPR 7(1)): record decisions, then mail each pending grant the confirmation link it waits for.

One use case for every touchpoint that records grants a person must confirm: the API, the console and the
preference center all call `OptIn`; none of them mails a confirmation itself."""
