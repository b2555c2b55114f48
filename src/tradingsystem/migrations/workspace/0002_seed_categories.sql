-- The default categories, seeded once: a migration runs once, so a category a user deletes stays deleted.
INSERT INTO workspace.categories (name, display_name, description, color, display_order) VALUES
    ('feature',       'Feature',            'New functionality',                 '#3B82F6', 1),
    ('bug',           'Bug',                'Something that does not work',      '#EF4444', 2),
    ('task',          'Task',               'A piece of work to do',             '#10B981', 3),
    ('idea',          'Ideia',              'An idea to explore',                '#F59E0B', 4),
    ('documentacao',  'Documentação',       'Documentation to write or fix',     '#8B5CF6', 5),
    ('coleta-dados',  'Coleta de Dados',    'Data collection',                   '#06B6D4', 6),
    ('banco-dados',   'Banco de Dados',     'Database work',                     '#6366F1', 7),
    ('analise-dados', 'Análise de Dados',   'Data analysis',                     '#14B8A6', 8),
    ('gestao-riscos', 'Gestão de Riscos',   'Risk management',                   '#F97316', 9),
    ('dashboard',     'Dashboard',          'Dashboards and visualisation',      '#EC4899', 10)
ON CONFLICT (name) DO NOTHING;
