SELECT api.contacts_create('Bench contact', 'bench@example.com', NULL, NULL)::text FROM app.act_as(:user, :org);
